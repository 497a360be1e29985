$ commucat bench --json --ca CA --target 127.0.0.1:58511 relay --pairs 8 --duration 5
