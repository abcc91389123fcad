"""Learning agents: they see states and rewards, never layers.

Import the modules directly (e.g. `keras_prune.agents.dqn`), so agents of different
methods stay independent.
"""
