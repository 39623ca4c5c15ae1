"""The ViTCoD attention engine's hardware (docs/vitcod.md, "The hardware")."""
