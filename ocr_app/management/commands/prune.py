from django.core.management.base import BaseCommand

from ocr_app import retention
from ocr_app.validation import human_bytes


class Command(BaseCommand):
    help = (
        "Apply the retention settings now (OCRDASH_KEEP_*_DAYS): remove the files and results of jobs that "
        "ended longer ago. A worker does the same once an hour."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Only say what would be removed.")

    def handle(self, *args, dry_run: bool = False, **options):
        if not retention.enabled():
            self.stdout.write("Nothing to do: every OCRDASH_KEEP_*_DAYS setting is unset (everything is kept).")
            return
        report = retention.prune(dry_run=dry_run)
        verb = "Would remove" if dry_run else "Removed"
        for row in report.parts:
            what = retention.PARTS[row.part][1]
            if not row.days:
                self.stdout.write(f"  {what}: kept forever (OCRDASH_{retention.PARTS[row.part][0]} is unset)")
                continue
            line = (f"  {what} (older than {row.days} days): {verb.lower()} from {row.jobs} job(s), "
                    f"{row.files} file(s), {human_bytes(row.bytes)}")
            if row.shared:
                line += f"; {row.shared} file(s) kept because another job still uses them"
            self.stdout.write(line)
        if dry_run:
            self.stdout.write("Dry run: nothing was removed.")
