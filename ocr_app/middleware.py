"""Anonymous visitors get the login page; scripts asking for JSON get a 401 they can read."""

from django.contrib.auth.middleware import LoginRequiredMiddleware
from django.http import JsonResponse


class LoginRequired(LoginRequiredMiddleware):
    def handle_no_permission(self, request, view_func):
        if "application/json" in request.headers.get("Accept", ""):
            return JsonResponse({"error": "Log in first."}, status=401)
        return super().handle_no_permission(request, view_func)
