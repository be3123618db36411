"""Every Dramatiq middleware of the worker, one per module, as Dramatiq lays out its own."""
