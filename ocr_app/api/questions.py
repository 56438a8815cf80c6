"""POST /api/v1/jobs/{id}/question: a question about one page of a job, asked as a new job of the
caller's (the rules are ocr_app/questions.py's)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from ocr_app import questions
from ocr_app.api.errors import ApiError
from ocr_app.api.serializers import JobDetailSerializer, QuestionRequestSerializer
from ocr_app.api.views import _detail, _job_or_404, disk_full, errors, unavailable
from ocr_app.delivery import BrokerUnavailable
from ocr_app.files import DiskFull


class JobQuestionView(APIView):
    @extend_schema(
        operation_id="jobs_question",
        summary="Ask a question about a job's page (dots.mocr's general question)",
        description="Makes a new job, owned by the caller, that asks `question` about page `page` of this job's "
        "file: the image itself, or the PDF page as the worker rendered it (so a PDF page must have been read "
        "first). The answer is the new job's text. Refused unless the configured model answers questions (the "
        "message names the models that do), and for an empty question or one over the length limit.",
        request=QuestionRequestSerializer,
        responses={201: JobDetailSerializer, **errors(400, 401, 404, 503, 507)},
        tags=["jobs"],
    )
    def post(self, request, pk: int):
        source = _job_or_404(pk)
        given = QuestionRequestSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        try:
            job = questions.create_question_job(
                source, given.validated_data["page"], given.validated_data["question"], request.user
            )
        except questions.QuestionError as exc:
            raise ApiError(str(exc), code="invalid", field_errors={"question": [str(exc)]}) from None
        except BrokerUnavailable as exc:
            raise unavailable(exc) from None
        except DiskFull as exc:
            raise disk_full(exc) from None
        return Response(_detail(job, request), status=status.HTTP_201_CREATED)
