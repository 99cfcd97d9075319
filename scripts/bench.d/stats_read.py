"""Prints a stats.json on one line with only the mount's totals and the disks that were read."""
import json
import sys

stats = json.load(sys.stdin)
disks = {k: v for k, v in stats.get("disks", {}).items() if v.get("reads", 0) > 0}
print(json.dumps({"mount": stats.get("mount"), "disks": disks}, separators=(",", ":")))
