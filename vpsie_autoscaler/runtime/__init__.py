"""A small, generic controller-runtime for asyncio: clock, work queue, reflector, informers,
controllers, leader election, events and the manager. No business logic lives here."""
