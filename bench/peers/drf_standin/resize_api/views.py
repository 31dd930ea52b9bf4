"""The two routes the benchmark uses, as the real project's views do them:

- POST task/create/ (multipart width, height, image): the serializer validates, the
  upload is written to media/images/ chunk by chunk, the Celery task is sent, its id is
  remembered in Redis (db 1) for a day, 201 {"status": "SUCCESS", "task_id": ...};
- GET task/check/<id>/: unknown ids 400; else the task's state from Celery's result
  backend (AsyncResult's), with its progress and, once done, the image's URL."""

import logging
import os
import uuid
from datetime import datetime

import redis
from celery.result import AsyncResult
from django.conf import settings
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView
from standin import celery_app

from .serializers import TaskCreateSerializer
from .tasks import resize

known_tasks = redis.StrictRedis(host=settings.REDIS_HOST, port=int(settings.REDIS_PORT), db=1)
logger = logging.getLogger(__name__)


def stored_name(filename):
    """A name made of the time, as the real project's, and a random part (two gunicorn
    workers may take the same microsecond)."""
    return f"{datetime.now().timestamp()}-{uuid.uuid4().hex[:8]}{os.path.splitext(filename)[1]}"


class TaskCreateView(GenericAPIView):
    serializer_class = TaskCreateSerializer

    def post(self, request, *args, **kwargs):
        serializer = TaskCreateSerializer(data=request.data)
        if not serializer.is_valid():
            context = {**serializer.errors, "description": "fail serializer", "status": "FAIL"}
            logger.warning("fail serializer: %s", context)
            return Response(context, status=status.HTTP_400_BAD_REQUEST)
        os.makedirs(settings.IMAGES_ROOT, exist_ok=True)
        image_name = stored_name(serializer.validated_data["image"].name)
        image_path = os.path.join(settings.IMAGES_ROOT, image_name)
        with open(image_path, "wb") as file:
            for chunk in request.FILES["image"].chunks():
                file.write(chunk)
        task = resize.delay(serializer.data["width"], serializer.data["height"], image_path, image_name)
        known_tasks.setex(str(task.id), settings.REDIS_STORAGE_TIME, 1)
        context = {"status": "SUCCESS", "task_id": task.id}
        logger.info("Create task: %s", context)
        return Response(context, status=status.HTTP_201_CREATED)


class TaskCheckView(APIView):
    def get(self, request, task_id):
        if not known_tasks.exists(task_id):
            context = {"status": "FAIL", "description": "Task not exist"}
            logger.warning("Task not exist: %s", task_id)
            return Response(context, status=status.HTTP_400_BAD_REQUEST)
        task = AsyncResult(task_id, app=celery_app)
        # One read of the result backend for the state and the result together. (The real
        # project reads `task.state`, then `task.result`: a task finishing in between gives
        # its URL where the progress was expected, and the check answers 500.)
        meta = task.backend.get_task_meta(task.id)
        state, result = meta["status"], meta.get("result")
        context = {"status": "SUCCESS", "task_id": task_id, "task_status": state}
        code = status.HTTP_200_OK
        if state == "PENDING":
            context["progress"] = 0
        elif state == "PROGRESS":
            context["progress"] = result.get("progress")
        elif state == "SUCCESS":
            context["image"] = result
            context["progress"] = 100
            if not context["image"]:
                context.update(status="FAIL", description="missing url image")
                code = status.HTTP_500_INTERNAL_SERVER_ERROR
        else:
            context.update(status="FAIL", description="Unknown error")
            code = status.HTTP_500_INTERNAL_SERVER_ERROR
        logger.info("Check task: %s", context)
        return Response(context, status=code)
