"""The OAI-PMH provider over a harvestable catalogue (issue 19)."""
