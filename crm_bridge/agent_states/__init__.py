"""Agent states: queue login/logout, pauses with a reason, after-call work, state history."""
