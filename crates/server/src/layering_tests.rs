//! Keeps the graph of the crate's top-level modules a DAG (the layering is described in the
//! crate documentation, `lib.rs`).
//!
//! The test parses the crate's sources with `syn`, walking the module tree from `lib.rs` as the
//! compiler does (`mod x;` → `x.rs` or `x/mod.rs`), and records every path that names another
//! top-level module: `crate::x::…` in `use` items, types, expressions and macro arguments, and
//! `super::…::x` chains that climb to the crate root. Code under `#[cfg(test)]` is left out: a
//! test may build its fixtures from a higher layer. Doc links are not code and do not count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// One reference: from top-level module `from` to top-level module `to`, seen in `file`.
type Edges = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.meta
                .require_list()
                .is_ok_and(|l| l.tokens.to_string().split_whitespace().any(|t| t == "test"))
    })
}

fn parse(path: &Path) -> syn::File {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    syn::parse_file(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// Collects the top-level modules named by the paths of one module's code.
struct Refs<'a> {
    /// The top-level module this code belongs to.
    top: &'a str,
    /// How many modules deep this code is (a top-level module is 1).
    depth: usize,
    /// All top-level modules of the crate.
    modules: &'a BTreeSet<String>,
    found: BTreeSet<String>,
}

impl Refs<'_> {
    fn segments(&mut self, idents: &[String]) {
        let target = match idents.first().map(String::as_str) {
            Some("crate") => idents.get(1),
            Some("super") => {
                let ups = idents.iter().take_while(|s| *s == "super").count();
                if ups == self.depth {
                    idents.get(ups)
                } else {
                    None
                }
            }
            _ => None,
        };
        if let Some(target) = target
            && target != self.top
            && self.modules.contains(target)
        {
            self.found.insert(target.clone());
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                prefix.push(n.ident.to_string());
                self.segments(prefix);
                prefix.pop();
            }
            syn::UseTree::Rename(r) => {
                prefix.push(r.ident.to_string());
                self.segments(prefix);
                prefix.pop();
            }
            syn::UseTree::Glob(_) => self.segments(prefix),
            syn::UseTree::Group(g) => {
                for tree in &g.items {
                    self.use_tree(prefix, tree);
                }
            }
        }
    }

    /// Macro arguments are plain tokens: look for `crate :: x` and `super :: … :: x` in them.
    fn tokens(&mut self, tokens: proc_macro2::TokenStream) {
        let mut path: Vec<String> = Vec::new();
        let mut colons = 0;
        for tree in tokens {
            match tree {
                proc_macro2::TokenTree::Ident(i) => {
                    if colons == 2 || path.is_empty() {
                        path.push(i.to_string());
                    } else {
                        self.segments(&path);
                        path = vec![i.to_string()];
                    }
                    colons = 0;
                }
                proc_macro2::TokenTree::Punct(p) if p.as_char() == ':' && colons < 2 => {
                    colons += 1;
                }
                proc_macro2::TokenTree::Group(g) => {
                    self.segments(&path);
                    path.clear();
                    colons = 0;
                    self.tokens(g.stream());
                }
                _ => {
                    self.segments(&path);
                    path.clear();
                    colons = 0;
                }
            }
        }
        self.segments(&path);
    }
}

impl<'ast> Visit<'ast> for Refs<'_> {
    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        if !is_cfg_test(&item.attrs) {
            self.use_tree(&mut Vec::new(), &item.tree);
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let idents: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        self.segments(&idents);
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.tokens(mac.tokens.clone());
        syn::visit::visit_macro(self, mac);
    }

    fn visit_attribute(&mut self, _: &'ast syn::Attribute) {}

    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs = match item {
            syn::Item::Const(i) => &i.attrs,
            syn::Item::Enum(i) => &i.attrs,
            syn::Item::Fn(i) => &i.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Macro(i) => &i.attrs,
            syn::Item::Mod(i) => &i.attrs,
            syn::Item::Static(i) => &i.attrs,
            syn::Item::Struct(i) => &i.attrs,
            syn::Item::Trait(i) => &i.attrs,
            syn::Item::Type(i) => &i.attrs,
            syn::Item::Use(i) => &i.attrs,
            _ => return syn::visit::visit_item(self, item),
        };
        if is_cfg_test(attrs) {
            return;
        }
        if let syn::Item::Mod(m) = item {
            // Out-of-line modules are read by `walk`; inline ones are one level deeper.
            if let Some((_, items)) = &m.content {
                self.depth += 1;
                for item in items {
                    self.visit_item(item);
                }
                self.depth -= 1;
            }
            return;
        }
        syn::visit::visit_item(self, item);
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if !is_cfg_test(&f.attrs) {
            syn::visit::visit_impl_item_fn(self, f);
        }
    }
}

/// Reads the module in `file` (at `depth`, with nested module files under `dir`) and its
/// out-of-line submodules, adding what they reference to `found`.
fn walk(
    file: &Path,
    dir: &Path,
    depth: usize,
    top: &str,
    modules: &BTreeSet<String>,
    found: &mut BTreeMap<String, BTreeSet<String>>,
) {
    let ast = parse(file);
    let mut refs = Refs {
        top,
        depth,
        modules,
        found: BTreeSet::new(),
    };
    for item in &ast.items {
        refs.visit_item(item);
    }
    let shown = file
        .strip_prefix(src_dir())
        .unwrap_or(file)
        .display()
        .to_string();
    for to in refs.found {
        found.entry(to).or_default().insert(shown.clone());
    }
    for item in &ast.items {
        if let syn::Item::Mod(m) = item
            && m.content.is_none()
            && !is_cfg_test(&m.attrs)
        {
            let (child, child_dir) = module_file(dir, &m.ident.to_string());
            walk(&child, &child_dir, depth + 1, top, modules, found);
        }
    }
}

/// The file of module `name` declared in a module whose submodules live in `dir`, and the
/// directory of its own submodules.
fn module_file(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let flat = dir.join(format!("{name}.rs"));
    let nested = dir.join(name);
    if flat.exists() {
        (flat, nested)
    } else {
        (nested.join("mod.rs"), nested)
    }
}

/// The top-level modules (outside `#[cfg(test)]`) and, for each, the modules it references
/// with the files that do.
fn graph() -> Edges {
    let src = src_dir();
    let lib = parse(&src.join("lib.rs"));
    let modules: BTreeSet<String> = lib
        .items
        .iter()
        .filter_map(|item| match item {
            syn::Item::Mod(m) if !is_cfg_test(&m.attrs) => Some(m.ident.to_string()),
            _ => None,
        })
        .collect();
    let mut edges = Edges::new();
    for top in &modules {
        let (file, dir) = module_file(&src, top);
        let found = edges.entry(top.clone()).or_default();
        walk(&file, &dir, 1, top, &modules, found);
    }
    edges
}

/// Every cycle found by a depth-first search, as module paths (`a -> b -> a`).
fn cycles(edges: &Edges) -> Vec<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn dfs(
        node: &str,
        edges: &Edges,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
        out: &mut Vec<Vec<String>>,
    ) {
        marks.insert(node.to_owned(), Mark::Open);
        stack.push(node.to_owned());
        for next in edges.get(node).into_iter().flat_map(BTreeMap::keys) {
            match marks.get(next).copied().unwrap_or(Mark::New) {
                Mark::New => dfs(next, edges, marks, stack, out),
                Mark::Open => {
                    let start = stack.iter().position(|m| m == next).unwrap_or(0);
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(next.clone());
                    out.push(cycle);
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks.insert(node.to_owned(), Mark::Done);
    }
    let mut marks = BTreeMap::new();
    let mut out = Vec::new();
    for node in edges.keys() {
        if marks.get(node).copied().unwrap_or(Mark::New) == Mark::New {
            dfs(node, edges, &mut marks, &mut Vec::new(), &mut out);
        }
    }
    out
}

#[test]
fn top_level_modules_form_a_dag() {
    let edges = graph();
    assert!(edges.contains_key("api") && edges.contains_key("server"));
    let found = cycles(&edges);
    let report: Vec<String> = found
        .iter()
        .map(|cycle| {
            let hops: Vec<String> = cycle
                .windows(2)
                .map(|w| {
                    let files = &edges[&w[0]][&w[1]];
                    let files: Vec<&str> = files.iter().map(String::as_str).collect();
                    format!("  {} -> {} ({})", w[0], w[1], files.join(", "))
                })
                .collect();
            format!("{}\n{}", cycle.join(" -> "), hops.join("\n"))
        })
        .collect();
    assert!(
        found.is_empty(),
        "import cycles between top-level modules:\n{}",
        report.join("\n")
    );
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let mut edges = Edges::new();
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        edges
            .entry(from.to_owned())
            .or_default()
            .entry(to.to_owned())
            .or_default()
            .insert(format!("{from}.rs"));
    }
    assert_eq!(cycles(&edges), vec![vec!["a", "b", "c", "a"]]);
    edges.get_mut("c").map(|c| c.remove("a"));
    assert!(cycles(&edges).is_empty());
}

#[test]
fn paths_in_code_and_macros_count_but_tests_and_docs_do_not() {
    let modules: BTreeSet<String> = ["api", "config", "metrics", "router", "tls"]
        .map(String::from)
        .into();
    let ast: syn::File = syn::parse_quote! {
        //! [`crate::router`] in a doc link
        use crate::{config::Bound, metrics::{self}};
        fn f() { tracing::info!(x = ?crate::tls::load()); }
        #[cfg(test)]
        mod tests { use crate::router::X; }
        mod inner { use super::super::api::Y; }
    };
    let mut refs = Refs {
        top: "connect",
        depth: 1,
        modules: &modules,
        found: BTreeSet::new(),
    };
    for item in &ast.items {
        refs.visit_item(item);
    }
    let found: Vec<&str> = refs.found.iter().map(String::as_str).collect();
    assert_eq!(found, ["api", "config", "metrics", "tls"]);
}
