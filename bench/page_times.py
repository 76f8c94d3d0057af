"""Server time of the portal pages on the demo data (see bench/README.md): run through `manage.py shell`."""

import time, statistics
from django.test import Client
from django.contrib.auth import get_user_model
U = get_user_model()
out = []
for username, paths in [("lucia", ["/", "/projects/1/label/", "/projects/2/label/"]),
                        ("amira", ["/", "/projects/3/review/"]), ("daniel", ["/"])]:
    c = Client(); c.force_login(U.objects.get(username=username))
    for path in paths:
        c.get(path)
        times = []
        for _ in range(30):
            t0 = time.perf_counter(); r = c.get(path); times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        out.append(f"| {username} | `{path}` | {r.status_code} | {statistics.median(times):.1f} | {times[int(0.95*len(times))-1]:.1f} |")
print("\n".join(out))
