"""The bottom layer, standard library only: tasks and their states, the option table,
thresholds, notices, templates, parsing, the clock, masking of secrets, the settings value
and the loop thread. Every other layer may use it; it uses none of them."""
