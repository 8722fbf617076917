"""The VM lab: host set-up, box builder, Vagrant driver, runner and report (`invoke lab.*`, `box.build`)."""
