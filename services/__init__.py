"""Cross-app services: events, order lifecycle, navigation, SumUp, sessions, db."""
