"""The admin listener, the staff dashboard, reports and metrics."""
