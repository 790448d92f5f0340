"""UpdatePublisher: ship learned policy versions to running agents like OS updates.

Signed bundles (`bundle`), sticky assignment of users to rollout arms (`assignment`), rollouts
with guardrails and automatic rollback, and distribution to runtimes.
"""
