"""Tables the cart reads but other apps own (blog, market, events)."""
