from rest_framework import serializers

from .models import Task


class TaskCreateSerializer(serializers.ModelSerializer):
    """width, height and image, with the model's validators."""

    class Meta:
        model = Task
        fields = ("width", "height", "image")
