"""Fakes shipped for tests: fake process reactor, scripted driver."""
