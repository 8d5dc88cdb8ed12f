"""Pipeline layers, one per module: each loops, waits or records; policies live in strategies."""
