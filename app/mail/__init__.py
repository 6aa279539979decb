"""Mail: backends (smtp, console, disabled) behind one interface, and the outbox sender."""
