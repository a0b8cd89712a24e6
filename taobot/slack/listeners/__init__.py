"""Thin Bolt listeners: ack first, translate what a person did into an intent, hand it to Services."""
