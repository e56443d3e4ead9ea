from rest_framework.routers import SimpleRouter


class Router(SimpleRouter):
    """Like SimpleRouter, without PUT: every update is a PATCH."""

    def get_method_map(self, viewset, method_map):  # type: ignore[no-untyped-def]
        return {m: a for m, a in super().get_method_map(viewset, method_map).items() if m != "put"}
