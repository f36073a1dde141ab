"""Deployment checks: the scale-out test of replicas behind nginx with a shared Redis store."""
