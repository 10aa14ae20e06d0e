"""Trainer plugins for palaestra. Each subpackage registers one trainer type through the
``palaestra.trainer_type`` entry-point group and imports nothing but ``palaestra``'s public
names, like any third-party plugin."""
