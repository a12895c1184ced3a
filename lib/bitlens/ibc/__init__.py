"""IBC: an interpretable hashing network whose bits are conv filters gated per class by a rule matrix (GRM)."""
