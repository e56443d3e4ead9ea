from django.urls import path

from portal.web.evaluations import views

urlpatterns = [
    path("orgs/<str:org_slug>/projects/<int:project_id>/runs/<int:run_id>/", views.RunPage.as_view(), name="run"),
]
