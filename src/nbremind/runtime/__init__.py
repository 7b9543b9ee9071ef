"""The running process: the session façade, pending loop ends, the run recorder, tqdm
pickup and the link to the watchdog. Uses every layer below ``api``."""
