"""Trainers. Each one turns PreparedData into a FactorModel."""
