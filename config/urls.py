from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from compute import api as compute_api
from compute import views as compute_views
from marketplace import api as market_api
from marketplace import documents_views
from marketplace import views as market_views
from marketplace import views_accounts as market_accounts
from portal import ledger_api, ledger_views, privacy, regulator_views

api = [
    path("api/datasets/", market_api.DatasetList.as_view(), name="api-datasets"),
    path("api/datasets/<int:pk>/", market_api.DatasetDetail.as_view(), name="api-dataset"),
    path("api/offers/", market_api.OfferCreate.as_view(), name="api-offers"),
    path("api/offers/<int:pk>/retire/", market_api.OfferRetire.as_view(), name="api-offer-retire"),
    path("api/orders/", market_api.OrderListCreate.as_view(), name="api-orders"),
    path("api/rights/", market_api.RightList.as_view(), name="api-rights"),
    path("api/rights/<int:pk>/revoke/", market_api.RightRevoke.as_view(), name="api-right-revoke"),
    path("api/provider/orders/", market_api.OrdersReceived.as_view(), name="api-orders-received"),
    path("api/nodes/", market_api.NodeListCreate.as_view(), name="api-nodes"),
    path("api/nodes/<slug:slug>/rekey/", market_api.NodeRekey.as_view(), name="api-node-rekey"),
    path("api/hub/key/", market_api.HubKey.as_view(), name="api-hub-key"),
    path("api/billing/bill/", market_api.Bill.as_view(), name="api-bill"),
    path("api/billing/revenue/", market_api.Revenue.as_view(), name="api-revenue"),
    path("api/billing/bill/export.<str:form>", market_api.ReportExport.as_view(), name="api-bill-export"),
    path("api/billing/revenue/export.<str:form>", market_api.RevenueExport.as_view(), name="api-revenue-export"),
    path("api/billing/alerts/", market_api.BudgetAlertList.as_view(), name="api-budget-alerts"),
    path("api/billing/alerts/<int:pk>/", market_api.BudgetAlertDetail.as_view(), name="api-budget-alert"),
    path("api/datasets/<int:pk>/privacy-budget/", privacy.DatasetPrivacyBudget.as_view(), name="api-privacy-budget"),
    path("api/datasets/<int:pk>/overlap-preview/", compute_api.OverlapPreview.as_view(), name="api-preview"),
    path("api/documents/", documents_views.DocumentListIssue.as_view(), name="api-documents"),
    path("api/documents/<str:number>/", documents_views.DocumentJson.as_view(), name="api-document"),
    path("api/documents/<str:number>/csv/", documents_views.DocumentFile.as_view(form="csv"), name="api-document-csv"),
    path("api/documents/<str:number>/pdf/", documents_views.DocumentFile.as_view(form="pdf"), name="api-document-pdf"),
    path("api/datasets/<int:pk>/value-preview/", compute_api.ValuePreview.as_view(), name="api-value-preview"),
    path("api/jobs/", compute_api.JobListCreate.as_view(), name="api-jobs"),
    path("api/jobs/<uuid:pk>/", compute_api.JobDetail.as_view(), name="api-job"),
    path("api/jobs/<uuid:pk>/cancel/", compute_api.JobCancel.as_view(), name="api-job-cancel"),
    path("api/ledger/entries/", ledger_api.EntryList.as_view(), name="api-ledger"),
    path("api/ledger/entries/<int:seq>/", ledger_api.EntryDetail.as_view(), name="api-ledger-entry"),
    path("api/ledger/key/", ledger_api.LogKey.as_view(), name="api-ledger-key"),
    path("api/ledger/checkpoints/", ledger_api.CheckpointList.as_view(), name="api-checkpoints"),
    path("api/ledger/checkpoints/latest/", ledger_api.CheckpointLatest.as_view(), name="api-checkpoint-latest"),
    path("api/ledger/checkpoints/<int:size>/", ledger_api.CheckpointDetail.as_view(), name="api-checkpoint"),
    path(
        "api/ledger/checkpoints/<int:size>/cosignatures/",
        ledger_api.CosignatureCreate.as_view(),
        name="api-cosignatures",
    ),
    path("api/ledger/proofs/consistency/", ledger_api.ConsistencyProof.as_view(), name="api-consistency"),
    path("api/ledger/corrections/", ledger_api.CorrectionCreate.as_view(), name="api-corrections"),
    path("api/ledger/witnesses/", ledger_api.WitnessList.as_view(), name="api-witnesses"),
    path("api/ledger/bundle/", ledger_api.BundleDownload.as_view(), name="api-ledger-bundle"),
    path("api/regulator/alerts/", regulator_views.AlertsApi.as_view(), name="api-regulator-alerts"),
    path("api/regulator/trail/", regulator_views.TrailApi.as_view(), name="api-regulator-trail"),
    path("api/records/<slug:slug>/", regulator_views.RecordsApi.as_view(), name="api-records"),
    path("api/records/<slug:slug>/pdf/", regulator_views.RecordsPdfApi.as_view(), name="api-records-pdf"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
]

pages = [
    path("", market_views.catalog, name="catalog"),
    path("datasets/<int:pk>/", market_views.dataset_detail, name="dataset"),
    path("rights/", market_views.rights, name="rights"),
    path("bill/", market_views.bill, name="bill"),
    path("bill/alerts/", market_views.budget_alert_new, name="budget-alert-new"),
    path("bill/alerts/<int:pk>/delete/", market_views.budget_alert_delete, name="budget-alert-delete"),
    path("documents/", documents_views.documents_page, name="documents"),
    path("documents/issue/", documents_views.documents_issue_page, name="documents-issue"),
    path("documents/<str:number>/", documents_views.document_page, name="document"),
    path("documents/<str:number>/download.<str:form>", documents_views.document_download, name="document-download"),
    path("provider/", market_views.provider_home, name="provider"),
    path("provider/datasets/<int:pk>/privacy/", privacy.dataset_privacy, name="dataset-privacy"),
    path("provider/offers/new/", market_views.offer_new, name="offer-new"),
    path("provider/offers/<int:pk>/retire/", market_views.offer_retire, name="offer-retire"),
    path("provider/nodes/new/", market_views.node_new, name="node-new"),
    path("provider/nodes/<slug:slug>/rekey/", market_views.node_rekey, name="node-rekey"),
    path("revenue/", market_views.revenue, name="revenue"),
    path("jobs/", compute_views.job_list, name="jobs"),
    path("jobs/new/", compute_views.job_new, name="job-new"),
    path("jobs/<uuid:pk>/", compute_views.job_detail, name="job"),
    path("jobs/<uuid:pk>/cancel/", compute_views.job_cancel, name="job-cancel"),
    path("jobs/<uuid:pk>/scores.csv", compute_views.job_scores_csv, name="job-scores"),
    path("models/", compute_views.model_list, name="models"),
    path("models/<uuid:pk>/", compute_views.model_detail, name="model"),
    path("datasets/<int:pk>/preview/", compute_views.preview, name="preview"),
    path("ledger/", ledger_views.entries, name="ledger"),
    path("ledger/entries/<int:seq>/", ledger_views.entry_detail, name="ledger-entry"),
    path("ledger/checkpoints/", ledger_views.checkpoints, name="ledger-checkpoints"),
    path("ledger/audit/", ledger_views.audit, name="ledger-audit"),
    path("regulator/alerts/", regulator_views.alerts_page, name="regulator-alerts"),
    path("records/", regulator_views.records_page, name="records"),
    path("records/<slug:slug>.<str:form>", regulator_views.records_download, name="records-download"),
    path("rights/<int:pk>/", compute_views.right_detail, name="right"),
    path("provider/orders/", market_accounts.orders_received, name="orders-received"),
    path("signup/", market_accounts.signup, name="signup"),
    path("organization/", market_accounts.organization, name="organization"),
    path("account/tokens/", market_accounts.tokens, name="tokens"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]

urlpatterns = api + pages
