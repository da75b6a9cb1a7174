"""URL layout of the test server: the service root is `/sensorthings/v1.1`."""

from django.urls import include, path

urlpatterns = [path("sensorthings/", include("sensorthings.versions.v1_1.urls"))]
