"""The soak: many shoppers on two app instances while their dependencies fail.

`python -m soak` (or `make soak`) starts its own database, Redis, SumUp sandbox and
two app instances on loopback ports, drives simulated shoppers through them while
faults are injected on a schedule, lets the sweep settle, then checks invariants
over the database, the sandbox and the event stream and prints a report. It exits
non-zero when an invariant is violated. Everything it starts, it stops.
"""
