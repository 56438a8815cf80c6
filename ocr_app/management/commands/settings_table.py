from django.core.management.base import BaseCommand

from dashboard.env import markdown_table


class Command(BaseCommand):
    help = "Print the README's configuration table (every OCRDASH_* variable, its default and meaning)."

    def handle(self, *args, **options):
        self.stdout.write(markdown_table())
