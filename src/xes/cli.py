"""The `xes` command."""
def main() -> int:
    return 0
