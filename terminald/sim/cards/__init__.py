"""Card descriptions (TOML) for terminald.sim.card; a package so the files ship in the wheel."""
