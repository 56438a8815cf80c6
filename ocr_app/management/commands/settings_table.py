from django.core.management.base import BaseCommand

from dashboard.env import env_file_block, markdown_table


class Command(BaseCommand):
    help = (
        "Print the configuration table of docs/deploy.md (every OCRDASH_* variable, its default and meaning), "
        "or with --env the OCRDASH_* block of .env.example."
    )

    def add_arguments(self, parser):
        parser.add_argument("--env", action="store_true", help="The .env.example block instead of the Markdown table.")

    def handle(self, *args, env: bool = False, **options):
        self.stdout.write(env_file_block() if env else markdown_table())
