"""Several pipemon processes on one PostgreSQL and one NATS: the roles (api, worker, dispatcher), who leads
what (leader.py), the worker's consumer of the event log (consumer.py), the dispatcher (dispatcher.py) and
the cluster's view of itself (members.py, watchdog.py). See ARCHITECTURE.md, Scaling Considerations."""
