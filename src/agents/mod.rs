//! Agents: the intent catalogue and the replies chosen for each intent.
