"""What the memory children read about their own process (imported by them; their directory is
on sys.path because they run as scripts)."""


def rss():
    """VmRSS of this process in kB, or None where /proc has no such line."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None
