"""Resident memory of this process, in MB (Linux)."""

import resource


def rss_mb():
    """Current resident set size."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb():
    """Peak resident set size since the process started."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
