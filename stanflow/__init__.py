"""stanflow: the application's face -- typed settings and the `stanflow` command."""
