"""Managers: one package per OpenNebula manager (src/<manager>)."""
