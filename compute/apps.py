from django.apps import AppConfig


class ComputeConfig(AppConfig):
    name = "compute"
    verbose_name = "Compute"

    def ready(self) -> None:
        from compute import receivers  # noqa: F401  (connects to marketplace's signals)
