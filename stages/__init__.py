"""One thin entry script per DVC stage (run as `python stages/<name>.py`); a package only so that
import-linter can check that the library never imports them."""
