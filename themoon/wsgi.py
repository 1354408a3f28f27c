import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "themoon.settings")
application = get_wsgi_application()

from core.redis_roles import check_redis_roles  # noqa: E402
from themoon.heap import freeze_startup_heap  # noqa: E402

check_redis_roles("web")  # an evicting events Redis refuses the start (core/redis_roles.py)
freeze_startup_heap()  # last: what the process keeps for its life, out of the collector's walk
