from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "gateway"
    verbose_name = "Gateway"

    def ready(self) -> None:
        from gateway.backends.base import check_configured

        check_configured()  # a GATEWAY_MODE no backend registers fails at start-up
