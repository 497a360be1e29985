//! Connections open at once per client address (`bounds.connections_per_ip`).
//!
//! IPv6 clients are counted per /64 (one host usually holds a whole /64); IPv4-mapped IPv6
//! addresses count as their IPv4 address. An entry exists only while its address has a
//! connection open, so the table never holds more entries than there are open connections
//! (`limits.max_connections`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};

/// Open connections by client address.
#[derive(Debug)]
pub struct PerIp {
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerIp {
    /// A table allowing `limit` connections per address.
    #[must_use]
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit: limit.max(1),
            open: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        // Single inserts and removes: the map is consistent even after a panic.
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for one more connection from `ip`; `None` if the address already has `limit`.
    #[must_use]
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let key = key_of(ip);
        let mut open = self.lock();
        let count = open.entry(key).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            table: Arc::clone(self),
            key,
        })
    }

    /// Addresses with a connection open.
    #[must_use]
    pub fn addresses(&self) -> usize {
        self.lock().len()
    }
}

/// One connection's place in the [`PerIp`] table; dropping it frees the place.
#[derive(Debug)]
pub struct IpSlot {
    table: Arc<PerIp>,
    key: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.table.lock();
        if let Some(count) = open.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// The address connections are counted under.
fn key_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn cap_per_address_and_entries_only_while_open() {
        let table = PerIp::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = table.admit(a);
        let second = table.admit(a);
        assert!(first.is_some() && second.is_some());
        assert!(table.admit(a).is_none());
        let other = table.admit(b);
        assert!(other.is_some());
        drop(first);
        let again = table.admit(a);
        assert!(again.is_some());
        drop((second, again, other));
        assert_eq!(table.addresses(), 0);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let table = PerIp::new(1);
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let two: IpAddr = "2001:db8:1:2::ffff:1".parse().unwrap();
        let slot = table.admit(one);
        assert!(slot.is_some());
        assert!(table.admit(two).is_none());
        let v4 = table.admit("198.51.100.7".parse().unwrap());
        assert!(v4.is_some());
        let mapped: IpAddr = "::ffff:198.51.100.7".parse().unwrap();
        assert!(table.admit(mapped).is_none());
    }
}
