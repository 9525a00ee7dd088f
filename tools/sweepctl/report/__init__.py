"""Results handed back to people: the PR comment, notes.md's generated block, GitHub."""
