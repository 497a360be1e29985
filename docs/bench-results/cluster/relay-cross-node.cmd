$ commucat bench --json --ca CA --target 127.0.0.1:58511,127.0.0.1:57963,127.0.0.1:60723 relay --pairs 8 --duration 5
