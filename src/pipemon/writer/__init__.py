"""The writer: the one thread that changes pipemon's state, and the stages it runs in each transaction.

    writer.py   the thread: queue, group commit, fault classification and recovery
    fold.py     stage 1, events → pipelines, runs and lineage
    health.py   stage 2, runs and the clock → health, detector verdicts, findings (engine/judge.py)
    alerts.py   stage 3, signals → alerts → notifications in the outbox (delivered by notify/delivery.py)
    stages.py   the Stage protocol and the order the writer calls them in
"""
