import os, sys
root = sys.argv[1]
names = sys.argv[2:] or sorted(d for d in os.listdir(root) if not d.startswith("."))
missing = [n for n in names if not os.path.isfile(os.path.join(root, n, "CURRENT"))]
if not names or missing:
    print("rodata data check failed: no published generation under %s for: %s; run the ETL first"
          % (root, ", ".join(missing) or "any dataset"), file=sys.stderr)
    sys.exit(1)
print("rodata data check: %d dataset(s) published under %s: %s" % (len(names), root, ", ".join(names)))
