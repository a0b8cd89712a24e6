"""Thin Bolt listeners: ack first, then hand over to IntakeService."""
