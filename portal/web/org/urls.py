from django.urls import path

from portal.web.org import views

urlpatterns = [
    path("orgs/<str:org_slug>/audit/", views.AuditPage.as_view(), name="audit"),
]
