"""Visual reports: pure plotting functions, subject and group report assembly."""
