"""An APIView whose handlers are coroutines, for the endpoints that wait (long-poll, chat completions).

Django (5.x) runs a view marked as a coroutine function in the server's event loop; DRF's own
dispatch is synchronous, so this one runs the synchronous steps (authentication, which reads the
database; permissions; throttles) in a worker thread and awaits the handler. Waiting then costs no
thread and never blocks the event loop.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from rest_framework.views import APIView


class AsyncAPIView(APIView):
    async def dispatch(self, request, *args, **kwargs):
        self.args = args
        self.kwargs = kwargs
        request = self.initialize_request(request, *args, **kwargs)
        self.request = request
        self.headers = self.default_response_headers
        try:
            await sync_to_async(self.initial)(request, *args, **kwargs)
            if request.method.lower() in self.http_method_names:
                handler = getattr(self, request.method.lower(), self.http_method_not_allowed)
            else:
                handler = self.http_method_not_allowed
            response = handler(request, *args, **kwargs)
            if hasattr(response, "__await__"):
                response = await response
        except Exception as exc:
            response = self.handle_exception(exc)
        self.response = self.finalize_response(request, response, *args, **kwargs)
        return self.response
